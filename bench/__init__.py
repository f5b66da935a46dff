"""Benchmarks that need a cluster (`make bench-deploy`); kept out of tests/, which pytest collects.
The trainer's benchmark stays with the trainer (trainer/bench.py, `make bench-trainer`)."""
