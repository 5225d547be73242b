/** turn.* methods. A turn's events go out as turn.event notifications on the connection that asked. */
import { parseCancelTurnParams, parseRunTurnParams } from "../params.js";
import { TURN_EVENT, type MethodHandler, type TurnEventParams } from "../protocol.js";

export const handleRunTurn: MethodHandler = async (params, { service, policy, signal, notify }) => {
  const parsed = await parseRunTurnParams(params, policy);
  return service.runTurn(parsed, {
    signal,
    onEvent: (turnId, seq, event) => {
      const eventParams: TurnEventParams = { turnId, seq, event };
      notify(TURN_EVENT, eventParams);
    },
  });
};

export const handleCancelTurn: MethodHandler = async (params, { service }) => service.cancelTurn(parseCancelTurnParams(params));
