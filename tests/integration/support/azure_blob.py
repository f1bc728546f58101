"""Azure Blob operations for the Azurite harness (support/azurite.rs), through Microsoft's
own SDK (azure-storage-blob, pinned in .ci/test-tools/requirements.txt), so no request is
signed by hand.

Usage: azure_blob.py CONNECTION_STRING CONTAINER COMMAND [ARGS]
  create-container
  put KEY BODY_FILE JSON   (JSON: {"content_type", "cache_control", "metadata"})
  get KEY                  (prints JSON, or "null" when there is no such blob)
  list                     (prints a JSON list of names)
  delete KEY
"""

import base64
import json
import sys

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings


def main(connection, container_name, command, *args):
    service = BlobServiceClient.from_connection_string(connection)
    container = service.get_container_client(container_name)
    if command == "create-container":
        container.create_container()
    elif command == "put":
        key, body_file, options = args
        options = json.loads(options)
        with open(body_file, "rb") as body:
            container.upload_blob(
                key,
                body.read(),
                overwrite=True,
                content_settings=ContentSettings(
                    content_type=options.get("content_type"),
                    cache_control=options.get("cache_control"),
                ),
                metadata=options.get("metadata") or None,
            )
    elif command == "get":
        (key,) = args
        blob = container.get_blob_client(key)
        try:
            properties = blob.get_blob_properties()
            body = blob.download_blob().readall()
        except ResourceNotFoundError:
            print("null")
            return
        settings = properties.content_settings
        print(
            json.dumps(
                {
                    "body": base64.b64encode(body).decode(),
                    "content_type": settings.content_type,
                    "cache_control": settings.cache_control,
                    "metadata": properties.metadata,
                }
            )
        )
    elif command == "list":
        print(json.dumps(sorted(blob.name for blob in container.list_blobs())))
    elif command == "delete":
        (key,) = args
        container.delete_blob(key)
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main(*sys.argv[1:])
