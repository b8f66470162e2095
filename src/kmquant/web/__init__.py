"""Web layer: an interactive page and a JSON + PNG API (``kmquant serve``)."""
