"""The plan, torch-free: from the config to the jobs, their params, names and GPU requests.

`config` (load, validate, fill defaults), `objectives` (each objective, hyper-parameter and run
option declared once), `variants` (a KD variant's values and its run name), `run_names` (teacher
sources in run names, runtime keys), `sequences` (where a run's training sequences come from),
`study` (the tables and figures of config/paper.yaml as jobs), `sizing` (memory and FLOPs of a
job) and `allocation` (what each job asks the cluster for). No torch or numpy import here.
"""
