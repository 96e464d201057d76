"""Adversarial training machinery: perturbation hooks (hooks.py); PGD and the trainers follow (issue 5)."""
