"""Browser tests: the notebooks in JupyterLab and Voilà, driven by a real headless Chromium.

A package (this file) so that ``tests/browser/conftest.py`` is imported as
``browser.conftest`` and does not replace ``tests/conftest.py`` as the module
``conftest`` that other test files import ``require_or_skip`` from.
"""
