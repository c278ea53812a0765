"""Jobs that chain the stages: the nightly runner (nightly.py) and its run history (history.py).

Nothing heavy is imported here; `gptquant nightly` loads the stages it needs when it runs.
"""
