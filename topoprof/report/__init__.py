"""Renderers: format what capture measured and analysis computed (HTML, JSON, Markdown,
terminal, TensorBoard). They compute nothing beyond formatting."""
