"""tuneforge.evaluate"""
