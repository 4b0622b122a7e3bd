"""The jobs side: the S3 runner, job documents, the fan-out of long uploads and its chunk worker."""
