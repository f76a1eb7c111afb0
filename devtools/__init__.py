"""What tests, benches and `make run` share and production does not use.

Process helper (`devtools.process`), broker launchers (`devtools.tansu`,
`devtools.kafka`). Nothing in production code imports this package.
"""
