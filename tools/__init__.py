"""The tools the project builds and runs (tools/build.sh, tools/versions.sh) and their Python helpers."""
