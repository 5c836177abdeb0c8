"""The standard tool pack: calculator, web search, URL fetch, files and document retrieval.

Shipped in the wheel and loadable by name: ``--tools agentloop.toolpack`` (every tool) or
``--tools agentloop.toolpack.calculator`` (one module), in agent files the same way, and in
Python with ``agentloop.loading.load_tools([...])`` or a plain import. Each module is a plain
file of ``@tool`` functions written against the public API only, so it is also the example of
how to write your own tools. The network and retrieval tools need
``pip install 'agentloop[tools]'`` (ddgs, bm25s, inscriptis); nothing here is imported by
``import agentloop``.
"""
