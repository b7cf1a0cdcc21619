import subprocess
import sys


def test_library_import_is_clean():
    """Importing cultureclip (and its core modules) loads no app/pipeline dependencies."""
    code = (
        "import sys, cultureclip, cultureclip.backbone, cultureclip.inference, cultureclip.loss, "
        "cultureclip.data, cultureclip.lora, cultureclip.train, cultureclip.checkpoint, cultureclip.config, cultureclip.fileio\n"
        "bad=[m for m in ('gradio','diffusers','plotly','synth','eval_suite','demo') if m in sys.modules]\n"
        "print('BAD', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout
