# SPDX-License-Identifier: Apache-2.0
"""What runs in the worker process: one `SonicSession` joined to the host by the link's two rings (`main`).

Importing this package imports nothing heavy; `novabridge.worker.main` imports the Nova Sonic SDK (Python >= 3.12).
"""
