"""tuneforge.objectives"""
