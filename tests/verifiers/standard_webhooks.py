"""Verifies webhook deliveries with the reference Standard Webhooks library.

Reads {"secret": "whsec_...", "messages": [{"headers": {...}, "body": "..."}]} on
stdin and prints one line per message: "ok <type>" or "error <reason>". The library
also checks that webhook-timestamp is within five minutes of now.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    request = json.load(sys.stdin)
    verifier = Webhook(request["secret"])
    for message in request["messages"]:
        try:
            payload = verifier.verify(message["body"].encode(), message["headers"])
            print("ok", payload["type"])
        except WebhookVerificationError as error:
            print("error", str(error).replace("\n", " "))


if __name__ == "__main__":
    main()
