"""The speech core: decoding, languages, segmentation, the engines and their models, the service."""
