"""What each command does, as library functions the CLI calls: prepare, train (and sweep),
evaluate, predict, export, demo; the pictures they draw (plots, matplotlib only here)."""
