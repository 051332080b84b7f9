"""KerasTuner searches over visnet's architectures (`python -m tuning.search`).

Empty until the metric-learning models exist: the searches tune their builders on the
retrieval metrics of `visnet.evaluation`.
"""
