"""The pytest plugin's parts besides the main one (conformance.plugin, the one `conformance` pytest11 entry point,
which registers them): `dynamic` (resources and the dynamic checks' fixtures), `deadline` (the run's deadline),
`report` (the bundle) and `metrics` (statsd). They share conformance.state; none imports another or the main part,
and none runs without the main part."""
