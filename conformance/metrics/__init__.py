"""A run's health figures per cloud and region: one model (model.py) sent to statsd and written as metrics.prom."""
