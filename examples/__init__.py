"""Example models and training loops bundled with topoprof (installed as ``topoprof.examples``)."""
