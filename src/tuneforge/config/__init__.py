"""tuneforge.config"""
