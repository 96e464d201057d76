"""Adversarial training machinery for any PyTorch model.

hooks.py (perturb a named module), pgd.py (one PGD for inputs, embeddings and latents), objectives.py and tasks.py
(what attacker and defender optimise), trainers.py (plain fine-tuning, AT, LAT, targeted LAT), trojans.py (triggers
and poisoning), robustness.py (held-out attacks), experiments/ (complete experiments behind `redlat experiment`).
"""
