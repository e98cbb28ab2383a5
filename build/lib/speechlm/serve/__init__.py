"""Real-time serving: ``speechlm serve`` (websocket protocol + web page) and its client.

See docs/serve.md for the protocol and :mod:`speechlm.serve.session` for what a model must
provide to be served.
"""
