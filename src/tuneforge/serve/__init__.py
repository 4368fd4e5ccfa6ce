"""tuneforge.serve"""
