"""Batch evaluation of prediction folders (``batch``) and its summary and HTML report (``report``)."""
