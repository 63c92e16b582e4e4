"""The data set layouts on disk, one module each, registered in asc.registry.LAYOUTS.

Each module holds a function registered with ``@LAYOUTS.register("<name>", on_disk=True)``
that reads the layout's metadata into an :class:`asc.data.files.Listing`; decoding,
caching and bad files are handled in :mod:`asc.data.files`.  A new module here is found
by the registry on its own; the built-in ones are imported below in the order in which
``data.name`` lists them.
"""

import importlib

for _layout in ("litis", "dcase", "esc50", "folder"):
    importlib.import_module(f"{__name__}.{_layout}")
