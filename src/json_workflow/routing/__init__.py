"""The decide stage, pure: the rules as configured, their conditions and templates, the router, and `explain`.

Nothing here touches the disk or reads the configuration: the router is handed its rules and folders.
"""
