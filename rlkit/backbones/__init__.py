"""Built-in policy backbones (feature extractors), registered as default plugins."""
