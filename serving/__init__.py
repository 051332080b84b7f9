"""Serving: TF Serving clients, a PredictionService gRPC server, the search API and its web page.

Empty until models can be exported: everything here consumes `visnet.export`'s SavedModels.
"""
