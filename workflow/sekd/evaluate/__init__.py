"""Evaluation (§4.3): `decode` (batched greedy or beam decoding), `bleu` (SacreBLEU), `comet`,
`significance` (paired bootstrap) and `validation_fit` (validation NLL and KL to the teacher).
"""
