"""The study's outputs: `tables`, `figures`, `curves`, `sensitivity`, `store_fidelity` (the teacher
store's fidelity report), `html` (the report page), `budget` (the compute used) and `archive`.
"""
