"""Run reports: figures and tables for reviewers and radiologists."""
