"""Integrations with training frameworks, each importing its framework only when used.

- :mod:`topoprof.integrations.lightning`: ``TopoprofCallback`` for PyTorch Lightning
  (``pip install topoprof[lightning]``).
- :mod:`topoprof.integrations.huggingface`: ``TopoprofCallback`` for ``transformers.Trainer``
  (``pip install topoprof[huggingface]``).
"""

__all__: list[str] = []
