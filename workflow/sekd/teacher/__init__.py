"""What is computed once from a teacher: `store` (its logits, full or sparse), `outputs` (its
generated training sequences) and `store_fidelity` (the store's losses against the online teacher).
"""
