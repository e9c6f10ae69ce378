"""Benchmarks: programs that print Quire's figures beside its peers', in one run, as ratios."""
