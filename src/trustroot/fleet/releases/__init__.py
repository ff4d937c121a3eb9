"""Signed releases over TUF: the repository, the key-handle signer and publishing.

::

    signer.py       KeyHandleSigner: a securesystemslib Signer over a trustroot KeyHandle (file or PKCS#11)
    repository.py   ReleaseRepository: root/targets/snapshot/timestamp on disk, consistent snapshots,
                    refresh_timestamp() for the service
    publish.py      publish_release(): verify a signed image, refuse a downgrade, publish, record
"""
