"""One reader per dataset format, each ``(root, format, **options) -> (dataset, problems)``.

``manifest`` (the project's own ``hagxai`` format), ``folders`` (also ``coco``), ``fixations`` and
``reference``; ``labels`` and ``scan`` hold what the folder readers share. :mod:`hagxai.data.open`
picks the reader.
"""
