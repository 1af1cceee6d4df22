"""One module per source behind the pipeline's ``Source`` protocol: a local folder, an S3
prefix copied or referenced (``--no-copy``), an HTTP archive (download + safe extraction).
"""
