-- Warm pools at scale: each instance keeps pointers to what the running-instances query and the
-- claim need, maintained in the transaction that changes them, so neither reads an instance's
-- build history, and neither depends on how a planner estimates a pool's deleted instances.
--
-- latest_build_id:   the instance's highest-numbered build (set where a build is added);
-- current_preset_id: the preset of its newest successful start that had one (set where a start
--                    succeeds);
-- ready_at:          when it became ready (running: latest build a succeeded start, not
--                    deleted, every non-deleted top-level agent of that build `ready`), NULL
--                    otherwise; recomputed where a build is added or finishes and where an agent
--                    reports. Claims pick from it alone.
ALTER TABLE pool_instances ADD COLUMN latest_build_id TEXT REFERENCES pool_builds (id);
ALTER TABLE pool_instances ADD COLUMN current_preset_id TEXT REFERENCES pool_presets (id);
ALTER TABLE pool_instances ADD COLUMN ready_at BIGINT;

UPDATE pool_instances SET latest_build_id = (
    SELECT b.id FROM pool_builds b WHERE b.instance_id = pool_instances.id ORDER BY b.number DESC LIMIT 1
);
UPDATE pool_instances SET current_preset_id = (
    SELECT b.preset_id FROM pool_builds b
    WHERE b.instance_id = pool_instances.id AND b.transition = 'start' AND b.status = 'succeeded'
      AND b.preset_id IS NOT NULL
    ORDER BY b.number DESC LIMIT 1
);
UPDATE pool_instances SET ready_at = created_at
WHERE deleted_at IS NULL
  AND EXISTS (SELECT 1 FROM pool_builds b WHERE b.id = pool_instances.latest_build_id
                AND b.transition = 'start' AND b.status = 'succeeded')
  AND NOT EXISTS (SELECT 1 FROM pool_agents a WHERE a.build_id = pool_instances.latest_build_id
                    AND a.parent_id IS NULL AND a.deleted_at IS NULL AND a.lifecycle <> 'ready');

-- Live membership: only instances not deleted are in the index, so a pool with a million
-- deleted instances reads the same few entries as a new one.
DROP INDEX pool_instances_live;
CREATE INDEX pool_instances_live ON pool_instances (pool_id, id) WHERE deleted_at IS NULL;
-- What a claim picks from: the pool's ready instances no claim or delete holds, oldest first.
CREATE INDEX pool_instances_claimable ON pool_instances (pool_id, id)
    WHERE ready_at IS NOT NULL AND claimed_at IS NULL AND delete_requested_at IS NULL AND deleted_at IS NULL;
