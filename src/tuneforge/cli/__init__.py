"""tuneforge.cli"""
