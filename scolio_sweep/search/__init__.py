"""The search space, searchers and early-stopping schedulers."""
