"""What every app shares and that knows no app: errors, API base, env, loop primitives."""
