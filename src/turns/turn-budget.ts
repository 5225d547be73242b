/**
 * A turn's budget: what turn.run asked for (options.budget), else the operator's default, never
 * above the operator's ceiling. A ceiling with no budget asked and no default is the budget: no
 * turn runs past it.
 */
import { ErrorCode, SidecarError } from "../errors.js";
import type { TurnBudgetRequest } from "../service.js";

export interface BudgetLimits {
  defaultTokens: number | null;
  maxTokens: number | null;
  defaultCpuSeconds: number | null;
  maxCpuSeconds: number | null;
}

export const NO_BUDGET_LIMITS: BudgetLimits = {
  defaultTokens: null,
  maxTokens: null,
  defaultCpuSeconds: null,
  maxCpuSeconds: null,
};

/** The budget in force for a turn; null fields are unlimited. */
export interface TurnBudget {
  tokens: number | null;
  cpuSeconds: number | null;
}

/** The turn's budget; -32006 (naming the field) for a request above the operator's ceiling. */
export function resolveTurnBudget(requested: TurnBudgetRequest | undefined, limits: BudgetLimits): TurnBudget {
  return {
    tokens: pick(requested?.tokens, limits.defaultTokens, limits.maxTokens, "tokens", "ALIVE_CODEX_BUDGET_TOKENS_MAX"),
    cpuSeconds: pick(
      requested?.cpuSeconds,
      limits.defaultCpuSeconds,
      limits.maxCpuSeconds,
      "cpuSeconds",
      "ALIVE_CODEX_BUDGET_CPU_SECONDS_MAX",
    ),
  };
}

function pick(
  requested: number | undefined,
  fallback: number | null,
  ceiling: number | null,
  key: string,
  setting: string,
): number | null {
  if (requested !== undefined && ceiling !== null && requested > ceiling) {
    throw new SidecarError(
      ErrorCode.notAllowed,
      `options.budget.${key} ${requested} is above the operator's ceiling ${ceiling}`,
      {
        data: { field: `options.budget.${key}`, reason: `must be at most ${ceiling} (${setting})` },
      },
    );
  }
  return requested ?? fallback ?? ceiling;
}
