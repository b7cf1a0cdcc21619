"""Studies on the bundled offline twin world (above cultureclip, eval_suite and synth: it calls them).

- `study`: the paper's claims one at a time (seeded ablations with bootstrap intervals, a Pareto
  frontier of twin accuracy vs general ability, a supervised oracle bound); `make world-study`.
"""
