"""Agreement statistics (``agreement``) and per-case segmentation metrics (``segmentation``).

Import from the submodules: each pulls in a different heavy dependency (pingouin, MONAI).
"""
