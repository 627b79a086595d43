"""``qagent watch``: a local web page that plays episodes live with one policy, or two side by side.

:mod:`~qagent.watch.player` plays (an env with ``rgb_array`` rendering and a :mod:`qagent.serve`
session), :mod:`~qagent.watch.server` streams what it shows to the page (``page.html``, no build
step, nothing fetched from elsewhere) and takes its controls, :mod:`~qagent.watch.app` ties them
to the command line. It needs gymnasium and the env, so it lives beside :mod:`qagent.serve`,
which stays torch- and gymnasium-free; the policy acts through ``qagent.serve.Policy``.
"""
