"""The report bundle: HTML, JSON, JUnit, manifest, signature, onboarding snippets."""
