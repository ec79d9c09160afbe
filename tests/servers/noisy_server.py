"""A stdio server that writes its API_KEY on stdout in a line that is not JSON-RPC, then exits: the SDK logs the line
it cannot parse (a traceback quoting it), a record the portal does not write itself."""

import os
import sys
import time

sys.stdout.write('{"jsonrpc": "2.0", "leak": "' + os.environ["API_KEY"] + '"}\n')
sys.stdout.flush()
time.sleep(0.5)
