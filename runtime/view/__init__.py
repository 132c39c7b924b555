"""The live view: a web page of the running city and pipeline (``tierpipe demo --view``, ``tierpipe run --view``).

:class:`~.server.ViewServer` serves the page (aiohttp, loopback by default) and pushes updates over
a WebSocket; :class:`~.probe.PipelineProbe` reads a running pipeline into the page's figures; the
page itself (``static/``: HTML, JavaScript, CSS, no CDN) is package data.
"""
