"""What a run leaves to look at: loss plots and memory figures, shared by training, evaluation and benchmarks."""
