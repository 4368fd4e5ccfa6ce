"""tuneforge.monitor: when to retrain, from served metrics, user feedback, evaluation history and input drift."""
