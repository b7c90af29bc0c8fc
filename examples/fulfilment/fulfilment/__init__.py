"""The reference fleet: an order-fulfilment saga by choreography, the first example
of fleet. A project like any team's own: its topology (`fleet.yaml`, beside this
package), its contracts, its workers, the stand-ins for the external systems it
calls, and its demo. fleet itself never imports it.

    cd examples/fulfilment && fleet up          # or: make up, from the repository
"""

from pathlib import Path

#: The reference fleet's topology file (in a source checkout).
TOPOLOGY_FILE = Path(__file__).resolve().parent.parent / "fleet.yaml"
